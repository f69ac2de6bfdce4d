"""Linear probing: the backbone is frozen, only the classifier head trains."""

from __future__ import annotations

from shpeft.methods.registry import Method, register_method


@register_method("linear")
class Linear(Method):
    """`Method.apply` as it is: freeze everything, train the head."""

    reference = "-"
    trains = "nothing"
