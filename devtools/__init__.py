"""Development tools for tenantscope: a local JWT issuer, the embedded local AWS, the demo
and the sample-event generator. Not part of the Lambda layer."""
