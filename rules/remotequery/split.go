package remotequery

import (
	"context"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// LocalNames matches the metric names the rule engine writes itself and so
// reads from the local TSDB: recording rules (a name with a colon, by
// Prometheus's naming convention) and the ALERTS and ALERTS_FOR_STATE series
// of alerting rules. Every other name is read from the remote store.
var LocalNames = labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, localPattern)

const localPattern = ".*:.*|ALERTS|ALERTS_FOR_STATE"

var (
	notLocal = labels.MustNewMatcher(labels.MatchNotRegexp, labels.MetricName, localPattern)
	// anyName keeps a selector made only of narrowing valid: query APIs
	// refuse one whose every matcher matches the empty string.
	anyName = labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")
)

// Split reads LocalNames from local and every other series from remote.
//
// A selector naming its metric exactly goes to one side only; any other
// selector (a regular expression on __name__, or no name at all) goes to
// both, each narrowed to its own names, and the answers are merged. Nothing
// can be read twice: a recording rule that also reaches the remote store
// (through remote_write, or a ruler running the same files) is read only
// from local, and a raw series the collector also keeps locally only from
// remote.
func Split(local, remote storage.Queryable) storage.Queryable {
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		lq, err := local.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		rq, err := remote.Querier(mint, maxt)
		if err != nil {
			_ = lq.Close()
			return nil, err
		}
		return storage.NewMergeQuerier([]storage.Querier{
			&side{Querier: lq, own: LocalNames},
			&side{Querier: rq, own: notLocal},
		}, nil, storage.ChainedSeriesMerge), nil
	})
}

// side is one half of a Split: it answers only for the names own matches.
type side struct {
	storage.Querier
	own *labels.Matcher
}

// narrow returns the matchers to send, or false when no series of this side
// can match.
func (s *side) narrow(matchers []*labels.Matcher) ([]*labels.Matcher, bool) {
	for _, m := range matchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return matchers, s.own.Matches(m.Value)
		}
	}
	if len(matchers) == 0 {
		return []*labels.Matcher{s.own, anyName}, true
	}
	return append(slices.Clone(matchers), s.own), true
}

func (s *side) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	ms, ok := s.narrow(matchers)
	if !ok {
		return storage.EmptySeriesSet()
	}
	return s.Querier.Select(ctx, sortSeries, hints, ms...)
}

func (s *side) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, ok := s.narrow(matchers)
	if !ok {
		return nil, nil, nil
	}
	return s.Querier.LabelValues(ctx, name, hints, ms...)
}

func (s *side) LabelNames(ctx context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, ok := s.narrow(matchers)
	if !ok {
		return nil, nil, nil
	}
	return s.Querier.LabelNames(ctx, hints, ms...)
}
