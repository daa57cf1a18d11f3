"""The prompt templates shipped with openai_utils, found by name through PROMPTS_PATH."""
