#!/usr/bin/env sh
# Register apr-mcp with Claude Code (user scope). Pick ONE of the two commands.
# `apr-mcp` must be on PATH (`pip install -e .` in a clone, see the README), or use its absolute path.
# Claude Code waits for tool calls as long as progress keeps arriving; apr-mcp reports per thread.

# OpenAI (or any OpenAI-compatible endpoint): the key is read from your shell environment.
claude mcp add --transport stdio --scope user apr-mcp \
  --env APR_BACKEND=openai --env APR_MODEL=gpt-4o-mini --env OPENAI_API_KEY="$OPENAI_API_KEY" \
  -- apr-mcp

# Ollama on this machine (no key):
# claude mcp add --transport stdio --scope user apr-mcp \
#   --env APR_BACKEND=openai --env APR_BASE_URL=http://localhost:11434/v1 --env APR_MODEL=llama3.1 \
#   -- apr-mcp

# Check it:  claude mcp list   (then /mcp inside Claude Code)
