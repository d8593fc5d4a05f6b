"""The user's model and data: loading, datasets, cost analysis (parameters, MACs), inspect, and the model's kind."""
