from forge.config.errors import ConfigError, ConfigProblem, ProblemCollector

__all__ = ["ConfigError", "ConfigProblem", "ProblemCollector"]
