"""API Gateway's request validator (as the local gateway applies request_schema.json, draft-04) and
the Lambda's compiled schema accept and reject exactly the same bodies.

Only JSON bodies with finite numbers are generated: byte size, non-finite numbers and text that is
not JSON are the Lambda's own checks, which the schema cannot express."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sagelab.local.serve import configure_handler_environment, request_model_problem

configure_handler_environment("http://127.0.0.1:9", "sagelab-dev--endpoint")
from stacks.front_door.runtime import handler  # noqa: E402

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=8)
number_rows = st.lists(st.one_of(st.none(), st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False)), max_size=4)
record_rows = st.dictionaries(st.sampled_from(["pixel_0", "pixel_1", "", "label"]), st.one_of(scalars, values), max_size=3)
rows = st.one_of(number_rows, record_rows, values)


@st.composite
def row_lists(draw: st.DrawFn) -> list[Any]:
    """Mostly short lists; sometimes just under, at or over the 1,000-row limit."""
    row = draw(rows)
    if draw(st.integers(0, 19)) == 0:
        return [row] * draw(st.sampled_from([999, 1000, 1001]))
    return draw(st.lists(rows, max_size=4))


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """Text nesting arrays up to thousands deep (as text: Python objects that deep break printing)."""
    depth = draw(st.one_of(st.integers(1, 8), st.integers(900, 3000)))
    text = "[" * depth + json.dumps(draw(scalars)) + "]" * depth
    return '{"instances": ' + text + "}" if draw(st.booleans()) else text


texts = st.one_of(
    st.builds(lambda r: {"instances": r}, row_lists()).map(json.dumps),
    st.builds(lambda r, extra: {"instances": r, **extra}, row_lists(), st.dictionaries(st.sampled_from(["rows", "Instances", "x"]), scalars, max_size=1)).map(
        json.dumps
    ),
    values.map(json.dumps),
    deeply_nested(),
)


def lambda_accepts(text: str) -> bool:
    try:
        handler.validate_payload(text)
    except handler.BadRequest:
        return False
    return True


@settings(max_examples=250, deadline=None)
@given(text=texts)
def test_gateway_model_and_lambda_accept_the_same_bodies(text: str) -> None:
    gateway_accepts = request_model_problem(text) is None
    assert gateway_accepts == lambda_accepts(text), (text[:300], request_model_problem(text))
