"""Reading what others wrote without trusting it: templates and YAML with limits, below every layer that reads them.

- `limits`: the budget of one template render (time and size), checked from inside the sandbox.
- `jinja`: the limited Jinja sandbox (`SANDBOX`, `render_template`, `render_source`).
- `chat_template`: chat templates rendered within the limits in an environment like transformers'.
- `yaml`: YAML files read with a size cap and an alias cap, problems named by file and line.

It imports only `workbench.errors`, so the registry, the prompt library and the backends can all use it.
"""
