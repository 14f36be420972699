"""Recipes: the YAML schema and its loader (no torch imports)."""

from .loader import dump_recipe, load_recipe, recipe_from_dict, recipe_json_schema
from .schema import Recipe

__all__ = ["Recipe", "dump_recipe", "load_recipe", "recipe_from_dict", "recipe_json_schema"]
