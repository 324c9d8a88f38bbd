package testenv

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver takes OTLP trace exports on loopback, by HTTP (protobuf, as
// OpenTelemetry's exporters send them to /v1/traces) and by gRPC, and keeps
// every span. Debian ships no OTLP receiver (no Collector, Jaeger or Tempo
// package), so this decodes the wire protocol itself with OpenTelemetry's
// own protobuf and gRPC service definitions: a malformed HTTP export is
// refused with 400, as a collector would.
type OTLPReceiver struct {
	srv  *httptest.Server
	grpc net.Listener

	mu    sync.Mutex
	spans []Span
	bad   int
}

// Span is one received span, with ids in hex and attribute values as text.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	Attributes                    map[string]string
	// Resource holds the attributes of the span's resource (service.name...).
	Resource map[string]string
	// Scope is the instrumentation scope (the tracer's name).
	Scope string
}

// OTLPReceiverForTest starts a receiver for t.
func OTLPReceiverForTest(t testing.TB) *OTLPReceiver {
	r := &OTLPReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("OTLP gRPC receiver: %v", err)
	}
	r.grpc = l
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, grpcTraces{r: r})
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	return r
}

// Endpoint is the host:port of the receiver's OTLP/HTTP side.
func (r *OTLPReceiver) Endpoint() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// GRPCEndpoint is the host:port of the receiver's OTLP/gRPC side (plain,
// no TLS).
func (r *OTLPReceiver) GRPCEndpoint() string { return r.grpc.Addr().String() }

// grpcTraces is the receiver's OTLP/gRPC trace service.
type grpcTraces struct {
	collectortrace.UnimplementedTraceServiceServer
	r *OTLPReceiver
}

func (g grpcTraces) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	spans := spansOf(req)
	g.r.mu.Lock()
	g.r.spans = append(g.r.spans, spans...)
	g.r.mu.Unlock()
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans returns every span received so far.
func (r *OTLPReceiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Malformed counts refused exports.
func (r *OTLPReceiver) Malformed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad
}

func (r *OTLPReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.NotFound(w, req)
		return
	}
	spans, err := decodeExport(req)
	if err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.spans = append(r.spans, spans...)
	r.mu.Unlock()
	resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func decodeExport(req *http.Request) ([]Span, error) {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return nil, fmt.Errorf("content type %q: only protobuf is taken", ct)
	}
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			return nil, err
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	var export collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &export); err != nil {
		return nil, err
	}
	return spansOf(&export), nil
}

func spansOf(export *collectortrace.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range export.GetResourceSpans() {
		res := attributes(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, Span{
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Name:         s.GetName(),
					Attributes:   attributes(s.GetAttributes()),
					Resource:     res,
					Scope:        ss.GetScope().GetName(),
				})
			}
		}
	}
	return out
}

func attributes(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

// anyValue renders a value as text; arrays as their items joined by ",".
func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_ArrayValue:
		items := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, item := range x.ArrayValue.GetValues() {
			items = append(items, anyValue(item))
		}
		return strings.Join(items, ",")
	default:
		return fmt.Sprint(v)
	}
}
