"""Remote models: inference through a model server or a Vertex AI endpoint.

Built on Beam's `RemoteModelHandler` (retries with exponential backoff, client-side
throttling with `ReactiveThrottler`):
  options.py   the `options` of a `ModelConfig(framework="remote")`, checked up front
  protocols.py how a batch becomes a request body and a response becomes outputs
               (Open Inference Protocol V2, TF Serving REST), and the metadata probe
  handlers.py  the Beam handlers: HTTP (V2, TF Serving) and Vertex AI
  fanout.py    a batch split into requests sent side by side, each row's outcome, and
               the request figures as Beam metrics
The framework module (`inference/frameworks/remote.py`) puts them together.
"""
