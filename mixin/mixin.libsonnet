// Cascade's monitoring mixin: the rule files of rules/ and the dashboards of
// dashboards/json, unchanged, in the shape kube-prometheus and other mixin
// users expect. The copies in rules/ and dashboards/ here, and
// sources.libsonnet, are written by `make manifests`; edit the originals.
local sources = import 'sources.libsonnet';

// A group's rules run in order, each seeing the ones above it in the same
// evaluation, and the incident chain depends on that: groups are never split.
// A group holding any alert is in prometheusAlerts, one of recording rules
// alone in prometheusRules.
local groups = std.flattenArrays([f.groups for f in sources.ruleFiles]);
local hasAlert(group) = std.length([r for r in group.rules if std.objectHas(r, 'alert')]) > 0;

{
  _config+:: {
    // Labels added to every alert, e.g. {team: 'sre'} for routing. Cascade's
    // own inhibition rules (cascade rules alertmanager-config) match on
    // alertname and cluster, so extra labels do not change them.
    alertLabels: {},
    // Evaluation interval of Cascade's groups; null leaves it to Prometheus's
    // global one. The rules assume 15s to 30s.
    ruleInterval: null,
    // Not configurable, on purpose: the label names cluster and region and
    // the metric names are the metric contract every rule and dashboard is
    // written against, and the rules select by metric name alone (no job
    // selector), so there is no selector to change.
  },

  local config = self._config,
  local configured(group) =
    group
    + (if config.ruleInterval != null then { interval: config.ruleInterval } else {})
    + {
      rules: [
        if std.objectHas(r, 'alert') && config.alertLabels != {} then r { labels+: config.alertLabels } else r
        for r in group.rules
      ],
    },

  prometheusAlerts+:: { groups+: [configured(g) for g in groups if hasAlert(g)] },
  prometheusRules+:: { groups+: [configured(g) for g in groups if !hasAlert(g)] },
  grafanaDashboards+:: sources.dashboards,
}
