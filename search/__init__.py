"""The planner: candidate meshes, CP-SAT stage split, placement onto the fabric."""
