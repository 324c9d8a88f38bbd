package loki

import (
	"math"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// TestEncodeIsLokisPushRequest checks the hand-written encoding against
// Loki's own Go package for the message (linked by this test only): the
// same bytes for one stream, and the same request decoded for several,
// whose order follows the batch's map.
func TestEncodeIsLokisPushRequest(t *testing.T) {
	times := []time.Time{
		time.Unix(1764547200, 123456789), // nanoseconds
		time.Unix(1764547200, 0),         // no nanoseconds field
		time.Unix(0, 0),                  // an empty Timestamp
		time.Unix(0, 1),
		time.Unix(-1, 999999999), // before 1970: a negative varint, ten bytes
		{},                       // year 1
		time.Unix(math.MaxInt32*4, 5),
	}
	lines := []string{"level=info msg=\"node lease expired\"", "", "ü€𝄞", string(make([]byte, 300))}
	streams := []model.LabelSet{
		{"component": "cascade", "cluster": "eu-1"},
		{"component": "cascade", "cluster": "eu-2", "severity": "page"},
		{},
	}

	one := newBatch()
	var want push.PushRequest
	want.Streams = []push.Stream{{Labels: streams[0].String()}}
	for i, ts := range times {
		line := lines[i%len(lines)]
		one.add(entry{labels: streams[0], time: ts, line: line})
		want.Streams[0].Entries = append(want.Streams[0].Entries, push.Entry{Timestamp: ts, Line: line})
	}
	wantBytes, err := want.Marshal()
	require.NoError(t, err)
	require.Equal(t, wantBytes, decodeSnappy(t, one.encode()))

	several := newBatch()
	wantEntries := map[string][]push.Entry{}
	for i := range 40 {
		s := streams[i%len(streams)]
		e := push.Entry{Timestamp: times[i%len(times)], Line: lines[i%len(lines)]}
		several.add(entry{labels: s, time: e.Timestamp, line: e.Line})
		wantEntries[s.String()] = append(wantEntries[s.String()], e)
	}
	var got push.PushRequest
	require.NoError(t, got.Unmarshal(decodeSnappy(t, several.encode())))
	gotEntries := map[string][]push.Entry{}
	for _, s := range got.Streams {
		require.NotContains(t, gotEntries, s.Labels, "stream %s sent twice", s.Labels)
		gotEntries[s.Labels] = s.Entries
	}
	require.Len(t, gotEntries, len(streams))
	for labels, entries := range wantEntries {
		require.Len(t, gotEntries[labels], len(entries), labels)
		for i, e := range entries {
			require.True(t, e.Timestamp.Equal(gotEntries[labels][i].Timestamp), "%s entry %d: %v, want %v", labels, i, gotEntries[labels][i].Timestamp, e.Timestamp)
			require.Equal(t, e.Line, gotEntries[labels][i].Line)
		}
	}
}

func TestEncodeEmptyBatch(t *testing.T) {
	var got push.PushRequest
	require.NoError(t, got.Unmarshal(decodeSnappy(t, newBatch().encode())))
	require.Empty(t, got.Streams)
}

func decodeSnappy(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := snappy.Decode(nil, b)
	require.NoError(t, err)
	return out
}
