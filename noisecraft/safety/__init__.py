"""Safety filters that say why: blocked terms, unsafe concepts (MiniLM similarity) and per-modality output checks,
installed as the pipeline protocol's before/after checks, so they run for every caller (API, CLI, HTTP).

::

    import noisecraft.safety as safety
    handle = safety.enable()                 # the shipped default policy (default_policy.json), every modality
    safety.enable("my_policy.json")          # or a policy file (JSON; YAML with pyyaml), which may extend the default
    handle.disable()                         # or safety.disable()
    safety.ensure_enabled()                  # what noisecraft.load / the CLI / the service call: idempotent, honours
                                             # NOISECRAFT_SAFETY=off (nothing), on (default), or a policy file path
    safety.exempt(pipeline)                  # one pipeline without checks (noisecraft.load(path, safety=False))
    safety.enable(safety.example_policy_path("shapes_deployment"))  # + an image output check (shapes analyzer)

Default: on. ``noisecraft.load``, the CLI and the service call :func:`ensure_enabled`; ``NOISECRAFT_SAFETY=off``
turns the filters off for a process, ``NOISECRAFT_SAFETY=/path/policy.json`` picks another policy. The concept
rules embed text with the shared frozen MiniLM encoder on the CPU (loaded on first use, ~5 s; cached per prompt).

A refused request raises :class:`noisecraft.protocol.Refused` whose reason names the rule, its score and its
threshold, e.g. "the prompt matches the blocked concept 'violence' (score 0.41 >= 0.145)". Every generation
that passes carries ``parameters["safety"]``: the policy (name, version, hash) and the decisions (the closest
concept of each text input, every output check), saved with its outputs.
"""

from noisecraft.safety.checks import (ENV, Safety, active, disable, enable, ensure_enabled, exempt, is_enabled,
                                      setting)
from noisecraft.safety.outputs import OUTPUT_CLASSIFIERS, register_output_classifier
from noisecraft.safety.policy import (OutputCheck, Policy, PolicyError, default_policy_path, example_policy_path,
                                      load_policy, policy_from_dict, refusal)
from noisecraft.safety.rules import ConceptRule, Decision, TermRule, fold, normalise, variants

__all__ = ["ENV", "OUTPUT_CLASSIFIERS", "ConceptRule", "Decision", "OutputCheck", "Policy", "PolicyError", "Safety",
           "TermRule", "active", "default_policy_path", "disable", "example_policy_path", "enable", "ensure_enabled",
           "exempt", "fold", "is_enabled", "load_policy", "normalise", "policy_from_dict", "refusal", "register_output_classifier",
           "setting", "variants"]
