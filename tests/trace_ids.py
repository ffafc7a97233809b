"""The trace ids the tracing tests share: Lambda's own trace and segment, and a producer's span."""

TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
LAMBDA_PARENT = "53995c3f42cd8ad8"  # the id of Lambda's own segment, which the X-Ray SDK sees as a facade
LAMBDA_TRACE_HEADER = f"Root={TRACE_ROOT};Parent={LAMBDA_PARENT};Sampled=1"
PRODUCER_PARENT = "00000000000000aa"  # the span of the request that sent a message
