"""Built-in simulators of Asterisk (ARI, events, callers' RTP) and of the OpenAI Realtime
service. Part of the product: `callbridge demo`, the tests and the benchmarks run on them."""
