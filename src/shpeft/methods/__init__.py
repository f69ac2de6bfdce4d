"""PEFT methods: one module each, registered by kind, used as `methods: {<id>: {kind: ...}}`."""
