"""payment-service: decides whether an order is paid and records the decision in the db."""
