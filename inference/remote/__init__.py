"""Remote models: inference through a model server or a Vertex AI endpoint.

Built on Beam's `RemoteModelHandler` (client-side throttling with `ReactiveThrottler`):
  options.py   the `options` of a `ModelConfig(framework="remote")`, checked up front
  protocols.py how a batch becomes a request body and a response becomes outputs
               (Open Inference Protocol V2, TF Serving REST, KServe V1)
  probe.py     the model's metadata, checked before Beam starts
  handlers.py  the Beam handlers, one attempt each: HTTP (V2, TF Serving, KServe V1)
               and Vertex AI
  backoff.py   how long a failed request waits before it is sent again
  breaker.py   the circuit breaker: an endpoint that is down fails requests at once
  fanout.py    a batch split into requests sent side by side, each retried on its own,
               each row's outcome, and the request figures as Beam metrics
The framework module (`inference/frameworks/remote.py`) puts them together.
"""
