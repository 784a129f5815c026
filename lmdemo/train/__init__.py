"""Training: LoRA classification and SFT, the estimate, and the worker process that runs a job."""
