"""Control-plane facade over the generated ``clutchcall_api`` client."""
