"""Gallery of enrolled subjects: database engine, tables and queries."""
