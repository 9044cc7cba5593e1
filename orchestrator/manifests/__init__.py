"""manifests: from the user's files to checked, frozen specs, and specs to and from the JSON users know.

documents (YAML read with the line and column of every node), schema (the compiled schema checks, full
reports from jsonschema), loader (file discovery, every check, building specs; graph checks come from
planning), codec (specs <-> manifest documents and their JSON form).

Imports core and planning. Reads files only when asked to load them; never touches processes.
"""
