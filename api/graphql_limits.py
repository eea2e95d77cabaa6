"""What one GraphQL request may ask for, checked before anything runs.

``RequestGuard`` is a strawberry extension that looks at the parsed document before
graphql-core validates it and refuses, with one GraphQL error and HTTP 400:

- integer literals longer than Python converts (thousands of digits): graphql-core would
  answer with Python's internal hint; this names the argument instead
  (``GRAPHQL_VALIDATION_FAILED``);
- introspection (``__schema``, ``__type``) when ``PULSE_INTROSPECTION`` says so
  (``INTROSPECTION_DISABLED``): ``on``, ``off``, or ``auto`` (callers with the ``read``
  scope only);
- a document over budget (``QUERY_TOO_COSTLY``, ``extensions.limit`` naming the setting):
  more fields than ``PULSE_MAX_QUERY_FIELDS`` (aliases and fragments expanded), deeper
  than ``PULSE_MAX_QUERY_DEPTH``, a list argument longer than ``PULSE_MAX_LIST_ITEMS``, or
  more series points and rows than ``PULSE_MAX_QUERY_POINTS`` across the whole document:
  a ``series``/``seriesUpdated`` costs its buckets (``last``, the default ``last`` or its
  ``from``/``to`` range; twice with ``compareTo``), a ``breakdown`` its ``top``, a
  ``gauges``/``gaugeUpdated`` its ``keys`` (``GAUGE_ROWS`` when all). A subscription is
  one document: each stream is held to the same budget.

The walk expands fragments, but stops as soon as a limit is passed, so a document built
to explode (fragments spreading each other) costs no more than the limit to refuse.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    Node,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from api.auth import Forbidden, Unauthenticated, authorize
from domain.settings import Settings
from projections.series import DEFAULT_LAST, MAX_POINTS

#: Rows a ``gauges`` query without ``keys`` is counted for.
GAUGE_ROWS = 100
SERIES_FIELDS = frozenset({"series", "seriesUpdated"})
GAUGE_FIELDS = frozenset({"gauges", "gaugeUpdated"})
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
#: List arguments with a bound (and error) of their own: ingestEvents' 1,000 events
#: (BAD_USER_INPUT, as POST /v1/events' 413), within the 1 MiB body.
OWN_BOUNDS = frozenset({("ingestEvents", "events")})
_SECONDS = {"MINUTE": 60, "HOUR": 3600, "DAY": 86400}


class _Refused(Exception):
    def __init__(self, error: GraphQLError) -> None:
        self.error = error


def _too_costly(message: str, limit: str, maximum: int, **details: Any) -> _Refused:
    return _Refused(
        GraphQLError(
            f"query too costly: {message}; at most {maximum:,} per request ({limit})",
            extensions={"code": "QUERY_TOO_COSTLY", "limit": limit, "max": maximum, **details},
        )
    )


class RequestGuard(SchemaExtension):
    """Runs ``check_document`` before validation; a refusal skips validation and execution."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        pulse = context.context.get("pulse") if isinstance(context.context, dict) else None
        if context.pre_execution_errors is None and document is not None and pulse is not None:
            error = check_document(
                document,
                context.variables or {},
                context.operation_name,
                pulse.settings,
                lambda: _may_introspect(context.context, pulse),
            )
            if error is not None:
                context.pre_execution_errors = [error]
        yield


def _may_introspect(context: Mapping[str, Any], pulse: Any) -> bool:
    try:
        authorize(context["request"], pulse, "read")
    except (Unauthenticated, Forbidden):
        return False
    return True


def check_document(
    document: DocumentNode,
    variables: Mapping[str, Any],
    operation_name: str | None,
    settings: Settings,
    may_introspect: Any = lambda: True,
) -> GraphQLError | None:
    """The error refusing ``document``, or None if it may run."""
    try:
        _Walk(document, variables, settings, may_introspect).run(operation_name)
    except _Refused as refused:
        return refused.error
    return None


class _Walk:
    def __init__(self, document: DocumentNode, variables: Mapping[str, Any], settings: Settings, may_introspect: Any):
        self.variables = variables if isinstance(variables, Mapping) else {}
        self.settings = settings
        self.may_introspect = may_introspect
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        self.fields = 0
        self.points = 0

    def run(self, operation_name: str | None) -> None:
        self._check_literals()
        for operation in self.operations:
            if operation_name is not None and (operation.name is None or operation.name.value != operation_name):
                continue
            self._selections(operation.selection_set, 1, frozenset())

    # --- Literals ------------------------------------------------------------------------

    def _check_literals(self) -> None:
        limit = sys.get_int_max_str_digits() or 4300
        for definition in (*self.operations, *self.fragments.values()):
            for argument, node in _literals(definition):
                if isinstance(node, IntValueNode) and len(node.value.lstrip("-")) > limit:
                    raise _Refused(
                        GraphQLError(
                            f"Argument '{argument}': an integer of {len(node.value.lstrip('-'))} digits is out of"
                            f" range (integers of at most {limit} digits are read)",
                            nodes=[node],
                            extensions={"code": "GRAPHQL_VALIDATION_FAILED", "argument": argument},
                        )
                    )

    # --- Selections ----------------------------------------------------------------------

    def _selections(
        self, selection_set: SelectionSetNode | None, depth: int, fragments: frozenset[str], schema: bool = False
    ) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self._field(selection, depth, fragments, schema)
            elif isinstance(selection, InlineFragmentNode):
                self._selections(selection.selection_set, depth, fragments, schema)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in fragments:  # a cycle is validation's to report
                    self._selections(fragment.selection_set, depth, fragments | {name}, schema)

    def _field(self, node: FieldNode, depth: int, fragments: frozenset[str], schema: bool) -> None:
        """``schema``: inside ``__schema``/``__type``, whose type references nest deeper
        than any query of data (GraphiQL's own introspection does): not held to the depth."""
        settings = self.settings
        name = node.name.value
        if name in INTROSPECTION_FIELDS and not self._introspection_allowed():
            raise _Refused(
                GraphQLError(
                    f"introspection ({name}) is disabled on this server"
                    + (" for callers without the read scope" if settings.introspection == "auto" else "")
                    + " (PULSE_INTROSPECTION)",
                    nodes=[node],
                    extensions={"code": "INTROSPECTION_DISABLED"},
                )
            )
        self.fields += 1
        if self.fields > settings.max_query_fields:
            raise _too_costly(
                "the document selects more fields (aliases and fragments counted)",
                "PULSE_MAX_QUERY_FIELDS",
                settings.max_query_fields,
            )
        if depth > settings.max_query_depth and not schema:
            raise _too_costly(
                f"field {name!r} is nested {depth} levels deep", "PULSE_MAX_QUERY_DEPTH", settings.max_query_depth
            )
        arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
        for argument, value in arguments.items():
            if (name, argument) in OWN_BOUNDS:
                continue
            items = self._list_length(value)
            if items > settings.max_list_items:
                raise _too_costly(
                    f"argument {argument!r} of {name!r} holds {items:,} items",
                    "PULSE_MAX_LIST_ITEMS",
                    settings.max_list_items,
                    argument=argument,
                )
        if depth == 1:
            cost = self._cost(name, arguments)
            if cost:
                self.points += cost
                if self.points > settings.max_query_points:
                    raise _too_costly(
                        f"the document asks for {self.points:,} series points and rows or more"
                        " (every alias counts: ask for fewer, shorter ranges or coarser resolutions)",
                        "PULSE_MAX_QUERY_POINTS",
                        settings.max_query_points,
                    )
        self._selections(node.selection_set, depth + 1, fragments, schema or name in INTROSPECTION_FIELDS)

    def _introspection_allowed(self) -> bool:
        mode = self.settings.introspection
        return mode == "on" or (mode == "auto" and self.may_introspect())

    # --- Cost ----------------------------------------------------------------------------

    def _value(self, node: ValueNode | None) -> Any:
        """A literal's or variable's value, as far as the cost needs it (None: unknown)."""
        if node is None or isinstance(node, NullValueNode):
            return None
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value)
        if isinstance(node, IntValueNode):
            try:
                return int(node.value)
            except ValueError:
                return None
        if isinstance(node, StringValueNode | EnumValueNode):
            return node.value
        if isinstance(node, BooleanValueNode):
            return node.value
        if isinstance(node, ListValueNode):
            return [self._value(item) for item in node.values]
        return None

    def _list_length(self, node: ValueNode) -> int:
        if isinstance(node, ListValueNode):
            longest = max((self._list_length(item) for item in node.values), default=0)
            return max(len(node.values), longest)
        if isinstance(node, ObjectValueNode):
            return max((self._list_length(f.value) for f in node.fields), default=0)
        if isinstance(node, VariableNode):
            return _longest_list(self.variables.get(node.name.value))
        return 0

    def _cost(self, name: str, arguments: Mapping[str, ValueNode]) -> int:
        if name in SERIES_FIELDS:
            points = self._series_points(arguments)
            return points * (2 if self._value(arguments.get("compareTo")) is not None else 1)
        if name == "breakdown":
            top = self._value(arguments.get("top")) if "top" in arguments else 10
            return top if isinstance(top, int) and 0 < top <= MAX_POINTS else 10
        if name in GAUGE_FIELDS:
            keys = self._value(arguments.get("keys"))
            return len(keys) if isinstance(keys, list) else GAUGE_ROWS
        return 0

    def _series_points(self, arguments: Mapping[str, ValueNode]) -> int:
        """The buckets a series asks for; out-of-range or malformed values are the
        resolver's to refuse, and count as the most a series may have meanwhile."""
        resolution = self._value(arguments.get("resolution"))
        last = self._value(arguments.get("last"))
        if isinstance(last, int) and not isinstance(last, bool):
            return min(max(last, 1), MAX_POINTS)
        start = _moment(self._value(arguments.get("from")))
        if start is None:
            return DEFAULT_LAST.get(str(resolution).lower(), MAX_POINTS) if "from" not in arguments else MAX_POINTS
        end = _moment(self._value(arguments.get("to"))) or datetime.now(start.tzinfo)
        step = _SECONDS.get(str(resolution), 60)
        try:
            buckets = math.ceil((end - start).total_seconds() / step) + 1
        except (OverflowError, TypeError):
            return MAX_POINTS
        return min(max(buckets, 1), MAX_POINTS)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "Zz" and value else value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _longest_list(value: Any, depth: int = 0) -> int:
    if depth > 20:
        return 0
    if isinstance(value, list):
        return max(len(value), *(_longest_list(item, depth + 1) for item in value[:1000]), 0)
    if isinstance(value, dict):
        return max((_longest_list(item, depth + 1) for item in value.values()), default=0)
    return 0


def _literals(definition: Node) -> Iterator[tuple[str, ValueNode]]:
    """Every literal value in a definition's arguments, with its argument's name."""
    stack: list[tuple[str, Any]] = [("", definition)]
    while stack:
        argument, node = stack.pop()
        if isinstance(node, ArgumentNode):
            stack.append((node.name.value, node.value))
        elif isinstance(node, ListValueNode):
            stack.extend((argument, item) for item in node.values)
        elif isinstance(node, ObjectValueNode):
            stack.extend((f"{argument}.{f.name.value}", f.value) for f in node.fields)
        elif isinstance(node, IntValueNode):
            yield argument, node
        elif isinstance(node, FieldNode):
            stack.extend((argument, a) for a in node.arguments or ())
            if node.selection_set is not None:
                stack.append((argument, node.selection_set))
        elif isinstance(node, SelectionSetNode):
            stack.extend((argument, s) for s in node.selections)
        elif isinstance(node, InlineFragmentNode | FragmentDefinitionNode | OperationDefinitionNode):
            stack.append((argument, node.selection_set))
            for variable in getattr(node, "variable_definitions", None) or ():
                if variable.default_value is not None:
                    stack.append((f"${variable.variable.name.value}", variable.default_value))
