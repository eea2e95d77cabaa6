"""Gauges: the latest value of a property per key, last-writer-wins by ``(occurredAt, id)``.

Keeping the greatest ``(occurred_at, event_id)`` is commutative, associative and
idempotent, so batches may be applied in any order, merged, or applied twice.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from domain.events import RecordedEvent
from domain.metrics import MISSING, GaugeDefinition, dimension_value
from domain.ports import GaugeKey, GaugeValue

#: Per event type: ``(gauge name, value property, key property or None)``.
CompiledGauges = dict[str, list[tuple[str, str, str | None]]]


def compile_gauges(gauges: Iterable[GaugeDefinition]) -> CompiledGauges:
    by_type: CompiledGauges = {}
    for gauge in gauges:
        by_type.setdefault(gauge.event_type, []).append((gauge.name, gauge.value_property, gauge.key_property))
    return by_type


def newer(candidate: GaugeValue, current: GaugeValue | None) -> bool:
    """Whether ``candidate`` wins over ``current``: later ``occurredAt``, then greater id."""
    return current is None or (candidate.occurred_at, candidate.event_id) > (current.occurred_at, current.event_id)


def project_gauges(
    by_type: CompiledGauges, events: Iterable[RecordedEvent], into: MutableMapping[GaugeKey, GaugeValue]
) -> None:
    """Fold the facts' gauge readings into ``into``, keeping the winner per key.

    A fact whose value property is missing or not a number sets no reading.
    """
    if not by_type:
        return
    for event in events:
        gauges = by_type.get(event.type)
        if gauges is None:
            continue
        props = event.properties
        micros = None
        for name, value_property, key_property in gauges:
            value = props.get(value_property)
            kind = type(value)
            if kind is not int and kind is not float:
                continue
            if micros is None:
                micros = event.occurred_micros
            key = (name, dimension_value(props.get(key_property)) if key_property else MISSING)
            candidate = GaugeValue(float(value), micros, event.id)
            if newer(candidate, into.get(key)):
                into[key] = candidate
