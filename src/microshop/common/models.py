"""The shop's wire models, shared by every service so that all four agree on one contract."""

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)
from typing_extensions import TypedDict

MAX_PRICE = Decimal(1_000_000_000)

Name = Annotated[str, Field(min_length=1, max_length=200)]


def decimal_to_number(amount: Decimal) -> int | float:
    """On the wire a price is a JSON number, as in the seed: 100, 10.5."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


Money = Annotated[
    Decimal,
    Field(gt=0, le=MAX_PRICE, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(decimal_to_number, return_type=int | float, when_used="json"),
]
MAX_ORDER_ID = 2**63 - 1
OrderId = Annotated[int, Field(ge=1, le=MAX_ORDER_ID)]


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    DECLINED = "declined"


def reject_text_number(value: Any, info: ValidationInfo) -> Any:
    """JSON prices must be numbers; only a form, where everything is text, may send "100"."""
    is_form = bool(info.context and info.context.get("form"))
    if isinstance(value, str) and not is_form:
        raise ValueError("must be a number, not a string")
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return value


def printable_text(value: Any) -> Any:
    """Names are text a person could type: no blank names, no control characters."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.strip():
        raise ValueError("must not be blank")
    if any(character < " " or character == "\x7f" for character in value):
        raise ValueError("must not contain control characters")
    return value


class OrderCreate(BaseModel):
    """What a customer sends to place an order."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"item": "t-shirt", "price": 100, "customer": "Gregor"}]},
    )

    item: Name
    price: Money
    customer: Name

    _price_is_a_number = field_validator("price", mode="before")(reject_text_number)

    _names_are_text = field_validator("item", "customer", mode="before")(printable_text)


class TransactionCreate(BaseModel):
    """A payment request: `amount` and `success` are optional so the seed's callers still work."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    order_id: OrderId = Field(alias="orderId")
    amount: Money | None = None
    success: bool | None = None

    _amount_is_a_number = field_validator("amount", mode="before")(reject_text_number)


class ListQuery(BaseModel):
    """Keyset pagination over ids, the same on every list endpoint."""

    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    after: Annotated[int, Field(ge=0, le=MAX_ORDER_ID)] = 0


class OrderListQuery(ListQuery):
    status: OrderStatus | None = None
    customer: Annotated[str | None, Field(min_length=1, max_length=200)] = None

    _customer_is_text = field_validator("customer", mode="before")(printable_text)


def price_to_json(cents: int) -> int | float:
    """100.00 is sent as 100 (as the seed did) and 10.50 as 10.5."""
    whole, fraction = divmod(cents, 100)
    return whole if fraction == 0 else cents / 100


def to_cents(amount: Decimal) -> int:
    return int(amount * 100)


class Order(TypedDict):
    """An order as every service returns it; `success` is null while payment is pending.

    The answers are typed dicts rather than models: the db builds thousands of them per second,
    and they go straight to orjson.
    """

    id: int
    item: str
    price: int | float
    customer: str
    status: OrderStatus
    success: bool | None


class Transaction(TypedDict):
    """A payment decision recorded for an order."""

    id: int
    orderId: int  # the seed's wire name
    success: bool
    amount: int | float


class OrderWithTransaction(TypedDict):
    """The answer to placing or reading one order."""

    order: Order
    transaction: Transaction | None


class TransactionEnvelope(TypedDict):
    transaction: Transaction
