// Package routing writes the Alertmanager configuration that turns
// Cascade's alerts into one page per incident: the incident goes to the
// paging receiver, grouped by its scope (a region, or a cluster of a
// region); a regional incident inhibits the cluster incidents and symptom
// alerts of its region, a cluster incident its cluster's symptom alerts;
// the auto-heal guards go to the automation that replaces nodes, at once
// each time one comes on; the rest become tickets.
package routing

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	yaml "go.yaml.in/yaml/v2"

	"github.com/cascade-sre/cascade/rules"
)

// The receivers of the configuration.
const (
	PageReceiver   = "cascade-page"
	TicketReceiver = "cascade-ticket"
	GuardReceiver  = "cascade-autoheal-guard"
)

// Options are the webhook URLs of the three receivers. Users usually swap
// the paging webhook for their pager's own receiver type after pasting.
type Options struct {
	PageURL       string
	TicketURL     string
	AutomationURL string
	// GroupWait of the incident route: how long Alertmanager waits for more
	// alerts of the same cluster before the first page.
	GroupWait time.Duration
	// RepeatInterval of the page while the incident keeps firing.
	RepeatInterval time.Duration
}

// DefaultOptions has placeholder URLs to be replaced.
func DefaultOptions() Options {
	return Options{
		PageURL:        "http://pager.example.invalid/cascade",
		TicketURL:      "http://tickets.example.invalid/cascade",
		AutomationURL:  "http://autoheal.example.invalid/cascade-guard",
		GroupWait:      10 * time.Second,
		RepeatInterval: 4 * time.Hour,
	}
}

// Validate reports the first invalid option.
func (o Options) Validate() error {
	for name, u := range map[string]string{"page": o.PageURL, "ticket": o.TicketURL, "automation": o.AutomationURL} {
		parsed, err := url.Parse(u)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return fmt.Errorf("routing: %s webhook URL %q is not an http(s) URL", name, u)
		}
	}
	if o.GroupWait < 0 || o.RepeatInterval <= 0 {
		return errors.New("routing: group wait must not be negative and repeat interval must be positive")
	}
	return nil
}

type config struct {
	Route        route         `yaml:"route"`
	InhibitRules []inhibitRule `yaml:"inhibit_rules"`
	Receivers    []receiver    `yaml:"receivers"`
}

type route struct {
	Receiver       string   `yaml:"receiver"`
	GroupBy        []string `yaml:"group_by,omitempty"`
	Matchers       []string `yaml:"matchers,omitempty"`
	GroupWait      string   `yaml:"group_wait,omitempty"`
	GroupInterval  string   `yaml:"group_interval,omitempty"`
	RepeatInterval string   `yaml:"repeat_interval,omitempty"`
	Continue       bool     `yaml:"continue,omitempty"`
	Routes         []route  `yaml:"routes,omitempty"`
}

type inhibitRule struct {
	SourceMatchers []string `yaml:"source_matchers"`
	TargetMatchers []string `yaml:"target_matchers"`
	Equal          []string `yaml:"equal"`
}

type receiver struct {
	Name           string          `yaml:"name"`
	WebhookConfigs []webhookConfig `yaml:"webhook_configs"`
}

type webhookConfig struct {
	URL          string `yaml:"url"`
	SendResolved bool   `yaml:"send_resolved"`
}

// AlertmanagerConfig returns a complete Alertmanager configuration (YAML)
// for Cascade's alerts. Merge its route, inhibit rule and receivers into an
// existing configuration, or run it as is.
func AlertmanagerConfig(o Options) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	regional := []string{`alertname="` + rules.IncidentAlert + `"`, rules.ScopeLabel + `="` + rules.ScopeRegion + `"`}
	// A cluster incident; rule files older than scopes set none.
	perCluster := []string{`alertname="` + rules.IncidentAlert + `"`, rules.ScopeLabel + `!="` + rules.ScopeRegion + `"`}
	c := config{
		Route: route{
			Receiver: TicketReceiver,
			GroupBy:  []string{rules.RegionLabel, rules.ClusterLabel, rules.SharedLabel, "alertname"},
			Routes: []route{
				{
					// Automation must learn at once each time a guard comes
					// on, a crash loop or a sequel included: a group whose
					// last notification was minutes ago would otherwise wait
					// the default group_interval (5m).
					Receiver:       GuardReceiver,
					Matchers:       []string{`alertname="` + rules.GuardAlert + `"`},
					GroupBy:        []string{rules.ScopeLabel, rules.RegionLabel, rules.ClusterLabel},
					GroupWait:      "0s",
					GroupInterval:  "10s",
					RepeatInterval: "5m",
				},
				{
					// One page per incident: a region's has no cluster
					// label, so all of it is one group.
					Receiver:       PageReceiver,
					Matchers:       []string{`alertname="` + rules.IncidentAlert + `"`},
					GroupBy:        []string{rules.ScopeLabel, rules.RegionLabel, rules.ClusterLabel},
					GroupWait:      amDuration(o.GroupWait),
					GroupInterval:  "5m",
					RepeatInterval: amDuration(o.RepeatInterval),
				},
			},
		},
		InhibitRules: []inhibitRule{
			{SourceMatchers: regional, TargetMatchers: perCluster, Equal: []string{rules.RegionLabel}},
			{SourceMatchers: regional, TargetMatchers: []string{rules.SymptomLabel + `="true"`}, Equal: []string{rules.RegionLabel}},
			{SourceMatchers: perCluster, TargetMatchers: []string{rules.SymptomLabel + `="true"`}, Equal: []string{rules.RegionLabel, rules.ClusterLabel}},
		},
		Receivers: []receiver{
			{Name: PageReceiver, WebhookConfigs: []webhookConfig{{URL: o.PageURL, SendResolved: true}}},
			{Name: TicketReceiver, WebhookConfigs: []webhookConfig{{URL: o.TicketURL, SendResolved: true}}},
			{Name: GuardReceiver, WebhookConfigs: []webhookConfig{{URL: o.AutomationURL, SendResolved: true}}},
		},
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	header := "# Alertmanager routing for Cascade, written by `cascade rules alertmanager-config`.\n" +
		"# One page per incident: while " + rules.IncidentAlert + " fires for a region (scope=\"region\"),\n" +
		"# the region's cluster incidents and symptom alerts (" + rules.SymptomLabel + "=\"true\") are inhibited;\n" +
		"# while it fires for a cluster, that cluster's symptom alerts are.\n"
	return append([]byte(header), b...), nil
}

// amDuration writes a duration as Alertmanager reads it (no fractional parts).
func amDuration(d time.Duration) string {
	if d%time.Hour == 0 && d > 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	if d%time.Minute == 0 && d > 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
