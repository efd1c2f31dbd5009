"""The jobs data layer shared by the API and the workers: schema, states and queries."""
