"""The configuration: schema, probe specs, loader with located errors, generated reference."""
