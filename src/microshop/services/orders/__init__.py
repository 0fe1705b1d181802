"""order-service: creates orders in the db and has payment-service charge them."""
