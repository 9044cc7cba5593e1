"""manifests: from the user's files to checked, frozen specs, and specs to and from the JSON users know.

files (reading budgets, discovery, bounded reads that never block), documents (YAML read as a bounded
stream of events, with the line and column of every value), schema (the compiled schema checks, full
reports from jsonschema), explain (schema errors in plain words), rules (the checks across fields, and of
specs sent through the API), loader (every check in order, building specs; graph checks come from
planning), cache (documents validated before, by content), codec (specs <-> manifest documents and JSON).

Imports core and planning. Reads files only when asked to load them; never touches processes.
"""
