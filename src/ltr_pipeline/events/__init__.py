"""Events: the contract (schema), where they come from (sources) and where served events go (sinks)."""
