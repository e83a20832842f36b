"""What tao-mcp knows about platforms and TAO models: the metadata shipped in tao_mcp/data, overlaid by the TAO
skill bank ($TAO_SKILL_BANK_PATH, default ~/tao-skills-external) when one is installed. Formats: docs/skill-bank.md.

Modules, each importing only the ones listed before it:
    bank       locating the bank, reading its YAML/JSON files (cached), the E_BAD_SKILL_BANK error
    platforms  platform records (built-in <- legacy manifest <- per-platform layout), lookup, credential presence
    models     TAO model records, lookup by name or alias, list_models
    backends   a model's implementations (backend_contracts) and which one runs an action
    images     container image resolution (absolute URI, a versions.yaml key, or a repository build)
    listing    list_models: pages of models, action schemas and AutoML facts, backend matrices
    overrides  the dotted-override language of spec_overrides (on the entrypoint's path helpers)
    actions    the action plan: what submit_job(model=..., action=...) runs
"""
