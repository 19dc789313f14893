"""Model store (GGUF → safetensors), model name resolution and the tiny test-model factory."""
