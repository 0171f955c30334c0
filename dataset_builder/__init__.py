"""dataset_builder: category labels -> LLM descriptions -> a `datasets` corpus with retrieved knowledge."""
