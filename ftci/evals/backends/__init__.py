"""Model backends behind one interface (`ModelBackend`): hf, openai, vllm."""
