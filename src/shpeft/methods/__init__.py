"""PEFT methods: one module each, registered by name, usable as `methods: {<id>: {kind: <name>}}`."""
