"""The management API's request and answer documents, validated with pydantic: a module
per area (`common`, `catalog`, `preferences`, `notifications`, `params`, `answers`,
`campaigns`, `log`, `events`). Import a name from the module that defines it."""
