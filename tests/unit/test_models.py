from decimal import Decimal

import pytest
from pydantic import ValidationError

from microshop.common.models import OrderCreate, TransactionCreate, price_to_json


def test_json_price_keeps_its_exact_decimal_value() -> None:
    order = OrderCreate.model_validate_json('{"item": "a", "price": 10.1, "customer": "b"}')
    assert order.price == Decimal("10.10")
    assert order.model_dump(mode="json")["price"] == 10.1


@pytest.mark.parametrize("price", ['"10.50"', '" 10.5"', '"+10.5"'])
def test_price_as_decimal_text_is_a_number(price: str) -> None:
    """Forms send text, and the seed's gateway forwards them as JSON strings: `{"price": "20"}`."""
    order = OrderCreate.model_validate_json(f'{{"item": "a", "price": {price}, "customer": "b"}}')
    assert order.price == Decimal("10.5")
    assert order.model_dump(mode="json")["price"] == 10.5


@pytest.mark.parametrize(
    "price",
    [
        '"ten"',
        '"1e3"',
        '"\u0661\u0660\u0660"',  # 100 in Arabic-Indic digits
        '"10,5"',
        '""',
        "true",
        "-1",
        '"-1"',
        "0",
        "1.001",
        '"1.001"',
        "1e400",
        "1000000000.01",
    ],
)
def test_bad_json_prices_are_refused(price: str) -> None:
    with pytest.raises(ValidationError):
        OrderCreate.model_validate_json(f'{{"item": "a", "price": {price}, "customer": "b"}}')


def test_transaction_request_uses_the_seeds_field_name() -> None:
    assert TransactionCreate.model_validate_json('{"orderId": 7}').order_id == 7


@pytest.mark.parametrize(("cents", "number"), [(10000, 100), (1050, 10.5), (1, 0.01)])
def test_prices_are_sent_as_the_seed_sent_them(cents: int, number: float) -> None:
    assert price_to_json(cents) == number


@pytest.mark.parametrize(
    "name",
    ["tab\there", "next\u0085line", "csi\u009bcode", "\u202egnp.exe", "isolate\u2066d", "del\x7f"],
)
def test_names_with_control_or_bidirectional_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        OrderCreate(item=name, price=Decimal(1), customer="b")


@pytest.mark.parametrize("name", ["Grüße", "日本の茶碗", "👩‍👩‍👧 family mug", "O'Brien & Söhne"])
def test_names_in_any_script_are_accepted(name: str) -> None:
    assert OrderCreate(item=name, price=Decimal(1), customer=name).item == name
