"""What a run tells about itself: Beam metrics (`metrics`), progress lines in the log
(`progress`), and the drift of its predictions against a baseline (`drift`). Imports only
`inference.config`.
"""
