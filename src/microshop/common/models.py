"""The shop's wire models, shared by every service so that all four agree on one contract."""

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
)
from typing_extensions import TypedDict

MAX_PRICE = Decimal(1_000_000_000)
MAX_NAME_LENGTH = 200

CONTROL_CLASS = r"\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
"""C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates, which
make a name display as something else (U+202E turns the rest of it around)."""
CONTROL_CHARACTERS = re.compile(f"[{CONTROL_CLASS}]")
BLANK_CLASS = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""The characters besides controls that `str.strip` removes: a name of only these is blank."""
NAME_PATTERN = f"^[^{CONTROL_CLASS}]*[^{CONTROL_CLASS}{BLANK_CLASS}][^{CONTROL_CLASS}]*$"
"""A name as a JSON Schema pattern (ECMA-262): not blank, no control characters."""


def printable_text(value: Any) -> Any:
    """Names are text a person could type: no blank names, no control characters."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.strip():
        raise ValueError("must not be blank")
    if CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters")
    return value


NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_LENGTH,
    "pattern": NAME_PATTERN,
    "description": "Any script; no control characters (C0, C1, DEL), no bidirectional "
    "overrides or isolates, not only spaces.",
}
Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_LENGTH),
    BeforeValidator(printable_text),
    WithJsonSchema(NAME_SCHEMA, mode="validation"),
]


def decimal_to_number(amount: Decimal) -> int | float:
    """On the wire a price is a JSON number, as in the seed: 100, 10.5."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


DECIMAL_TEXT = re.compile(r" *[+-]?[0-9]+(\.[0-9]+)? *")
"""A number written out in ASCII digits, perhaps between spaces: what a form sends, and what the
seed's gateway forwards."""


def number_or_decimal_text(value: Any) -> Any:
    """A price is a number, or text holding a decimal number ("20", "10.50"), as the seed's gateway
    forwards a form; other text, other scripts' digits and booleans are refused."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str) and not DECIMAL_TEXT.fullmatch(value):
        raise ValueError("must be a number")
    return value


PRICE_TEXT_PATTERN = (
    r"^ *\+?0*(?:"
    r"[1-9][0-9]{0,8}(?:\.[0-9]{1,2}0*)?"  # 1 to 999,999,999.99
    r"|1000000000(?:\.0+)?"  # the largest price
    r"|0\.(?:0[1-9]|[1-9][0-9]?)0*"  # 0.01 to 0.99
    r") *$"
)
"""`DECIMAL_TEXT` within the bounds of a price, as a JSON Schema pattern: above 0, at most
`MAX_PRICE`, at most two decimals once trailing zeros are dropped."""
PRICE_SCHEMA = {
    "anyOf": [
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": int(MAX_PRICE),
            "multipleOf": 0.01,
        },
        {"type": "string", "pattern": PRICE_TEXT_PATTERN},
    ],
    "description": "Above 0, at most 1,000,000,000, at most two decimals: a JSON number (read "
    "as a double), or text holding a decimal number in ASCII digits, as a form sends it.",
}
Money = Annotated[
    Decimal,
    Field(gt=0, le=MAX_PRICE, decimal_places=2, allow_inf_nan=False),
    BeforeValidator(number_or_decimal_text),
    PlainSerializer(decimal_to_number, return_type=int | float, when_used="json"),
    WithJsonSchema(PRICE_SCHEMA, mode="validation"),
]
MAX_ORDER_ID = 2**63 - 1
OrderId = Annotated[int, Field(ge=1, le=MAX_ORDER_ID)]


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    DECLINED = "declined"


class OrderCreate(BaseModel):
    """What a customer sends to place an order."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"item": "t-shirt", "price": 100, "customer": "Gregor"}]},
    )

    item: Name
    price: Money
    customer: Name


def not_text(value: Any) -> Any:
    """A JSON integer is a number, never text or a boolean, which a lax reading would take; a
    form's digits are made numbers before (`read_model`)."""
    if isinstance(value, str | bool):
        raise ValueError("must be a whole number")
    return value


def true_or_false(value: Any) -> Any:
    """A JSON boolean is `true` or `false`, never 0, 1 or "yes", which a lax reading would take."""
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


class TransactionCreate(BaseModel):
    """A payment request: `amount` and `success` are optional so the seed's callers still work."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    order_id: Annotated[OrderId, BeforeValidator(not_text)] = Field(alias="orderId")
    amount: Money | None = None
    success: Annotated[bool, BeforeValidator(true_or_false)] | None = None


MAX_PAGE_SIZE = 1000


def ascii_digits(value: Any) -> Any:
    """A number in a query string is ASCII digits and nothing else, as the schema's `integer` says:
    never "5.0", " 5", "+5" or "1_000", which a lax reading would take."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number in ASCII digits")
    return value


class ListQuery(BaseModel):
    """Keyset pagination over ids, the same on every internal list endpoint. A caller may ask for
    one more than a page, to learn from the same answer whether another page follows."""

    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE + 1), BeforeValidator(ascii_digits)] = 100
    after: Annotated[int, Field(ge=0, le=MAX_ORDER_ID), BeforeValidator(ascii_digits)] = 0


class OrderListQuery(ListQuery):
    status: OrderStatus | None = None
    customer: Name | None = None

    def admits(self, order: "ReceivedOrder") -> bool:
        """Whether `order` belongs after `after` and passes the filters: the seed's services ignore
        query strings and answer every order, so a reader applies the query itself too."""
        return (
            order.id > self.after
            and (self.status is None or order.status == self.status)
            and (self.customer is None or order.customer == self.customer)
        )


class OrderPageQuery(OrderListQuery):
    """The gateway's public list: a page holds at most `MAX_PAGE_SIZE` orders."""

    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE), BeforeValidator(ascii_digits)] = 100


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


# What a service reads from its peers. Readers are tolerant (Postel): a peer may be one of the
# seed's Node.js services, which send no `status`, `success` or `amount`, keep a price as the text
# they were sent, and may hold orders that were never validated. Only what is needed is required.

PeerPrice = Annotated[Money | Any, Field(union_mode="left_to_right")]
"""A price as a number when it is one; anything else the seed's db stored is passed on as it is."""


class ReceivedOrder(BaseModel):
    """An order as a db or order-service answers it; `status` is None where the peer has none."""

    model_config = ConfigDict(extra="allow")

    id: OrderId
    item: Any = None
    price: PeerPrice = None
    customer: Any = None
    status: OrderStatus | None = None
    success: bool | None = None

    @property
    def amount(self) -> Decimal | None:
        """The price, when it is one that can be charged."""
        return self.price if isinstance(self.price, Decimal) else None

    def settled_by(self, transaction: "ReceivedTransaction | None") -> "ReceivedOrder":
        """This order with the status its payment gives it; pending while there is none."""
        if transaction is None:
            return self.model_copy(update={"status": OrderStatus.PENDING, "success": None})
        status = OrderStatus.PAID if transaction.success else OrderStatus.DECLINED
        return self.model_copy(update={"status": status, "success": transaction.success})


class ReceivedTransaction(BaseModel):
    """A transaction as a db or payment-service answers it; the seed's has no `amount`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    id: Any = None
    order_id: OrderId | None = Field(default=None, alias="orderId")
    success: bool = True
    amount: PeerPrice = None


class ReceivedPlacement(BaseModel):
    """The answer to creating or reading one order: the seed's order-service sends only the
    transaction, the seed's db only the order."""

    model_config = ConfigDict(extra="allow")

    order: ReceivedOrder | None = None
    transaction: ReceivedTransaction | None = None

    @property
    def status(self) -> OrderStatus:
        return (self.order and self.order.status) or OrderStatus.PENDING


class ReceivedOrderId(BaseModel):
    """Only an order's id: all the gateway reads of a placement it passes on untouched."""

    id: OrderId


class ReceivedPlacementId(BaseModel):
    """A placement answered by order-service, read for its order's id alone (the seed's
    order-service sends no order: then the whole `ReceivedPlacement` is read)."""

    order: ReceivedOrderId | None = None


ReceivedOrders = TypeAdapter(list[ReceivedOrder])
ReceivedTransactions = TypeAdapter(list[ReceivedTransaction])
