"""Typed settings, each declared once (settings.py says how): one config per command. The
command line (cli_options.py), the Python API (api.py) and config.yaml all come from them."""
from .commands import (AuditConfig, DatasetsConfig, DemoConfig, ExplainConfig, ExportConfig, PredictConfig, PretrainConfig,
                       PruneConfig, ReportConfig, SelectConfig, ServeConfig, SimulateALConfig, TrackConfig, ZooAddConfig,
                       ZooListConfig, ZooRemoveConfig)
from .fit import (RANK_SETTINGS, SPLIT_SETTINGS, TUNED, CompareConfig, FitConfig, RankConfig, TuneConfig,
                  parse_class_list, parse_label_fractions, parse_synthesize)
from .settings import build, offered, parse_duration, parse_names, python_name, setting, signature

__all__ = ["RANK_SETTINGS", "SPLIT_SETTINGS", "TUNED", "AuditConfig", "CompareConfig", "DatasetsConfig", "DemoConfig",
           "ExplainConfig", "ExportConfig", "FitConfig", "PredictConfig", "PretrainConfig", "PruneConfig",
           "RankConfig", "ReportConfig", "SelectConfig", "ServeConfig", "SimulateALConfig", "TrackConfig", "TuneConfig",
           "ZooAddConfig", "ZooListConfig", "ZooRemoveConfig", "build", "offered", "parse_class_list",
           "parse_duration", "parse_label_fractions", "parse_names", "parse_synthesize", "python_name", "setting",
           "signature"]
