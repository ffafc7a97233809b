"""The order-fulfilment sample application. Every function goes through the tenantscope layer."""
