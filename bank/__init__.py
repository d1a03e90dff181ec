"""loragen's bank: the adapter core (bank.lora) and the DuckDB/FAISS store of adapters and tasks."""
