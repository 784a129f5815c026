"""Jobs: one module per job, each a typed request -> typed result, streamed where the job streams."""
