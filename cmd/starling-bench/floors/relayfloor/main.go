// relayfloor: the cost floor of a gRPC IM relay on this machine — no storage, no auth.
// Each delivered message costs 4 gRPC messages: send (A→S), ack (S→A), push (S→B), push-ack (B→S).
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type relayServer interface{}

var desc = grpc.ServiceDesc{
	ServiceName: "relay.Relay",
	HandlerType: (*relayServer)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Stream", Handler: streamHandler, ServerStreams: true, ClientStreams: true}},
}

type conn struct{ out chan *wrapperspb.BytesValue }

var (
	mu     sync.RWMutex
	conns  = map[uint32]*conn{}
	groups = map[uint32][]grpc.ServerStream{} // gid -> member streams (ids >= 1<<30 join group id>>16)
	gmu    = map[uint32]*sync.Mutex{}
)

func streamHandler(_ any, ss grpc.ServerStream) error {
	first := new(wrapperspb.BytesValue)
	if err := ss.RecvMsg(first); err != nil {
		return err
	}
	id := binary.BigEndian.Uint32(first.Value)
	if id >= 1<<30 { // a group member: receives fan-out pushes written straight from the sender's goroutine
		gid := (id - 1<<30) >> 16
		mu.Lock()
		groups[gid] = append(groups[gid], ss)
		if gmu[gid] == nil {
			gmu[gid] = &sync.Mutex{}
		}
		mu.Unlock()
		for {
			m := new(wrapperspb.BytesValue)
			if err := ss.RecvMsg(m); err != nil {
				return nil
			}
		}
	}
	c := &conn{out: make(chan *wrapperspb.BytesValue, 1024)}
	mu.Lock()
	conns[id] = c
	mu.Unlock()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case m := <-c.out:
				if err := ss.SendMsg(m); err != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	for {
		m := new(wrapperspb.BytesValue)
		if err := ss.RecvMsg(m); err != nil {
			return nil
		}
		if m.Value[0] == 'A' { // push-ack: drop
			continue
		}
		if m.Value[0] == 'G' { // fan-out: encode once, write to every member stream
			gid := binary.BigEndian.Uint32(m.Value[1:5])
			mu.RLock()
			members := groups[gid]
			mu.RUnlock()
			push := &wrapperspb.BytesValue{Value: append([]byte{'P'}, m.Value[1:]...)}
			var pm grpc.PreparedMsg
			if len(members) > 0 {
				pm.Encode(members[0], push)
			}
			for _, st := range members {
				st.SendMsg(&pm)
			}
			c.out <- &wrapperspb.BytesValue{Value: []byte{'K', 0, 0, 0, 0}}
			continue
		}
		to := binary.BigEndian.Uint32(m.Value[1:5])
		mu.RLock()
		dst := conns[to]
		mu.RUnlock()
		c.out <- &wrapperspb.BytesValue{Value: []byte{'K', 0, 0, 0, 0}} // send-ack
		if dst != nil {
			push := &wrapperspb.BytesValue{Value: append([]byte{'P'}, m.Value[1:]...)}
			dst.out <- push
		}
	}
}

func main() {
	pairs := flag.Int("pairs", 100, "")
	window := flag.Int("window", 16, "")
	dur := flag.Duration("d", 10*time.Second, "")
	serve := flag.String("serve", "", "listen addr: run server only")
	target := flag.String("target", "", "server addr: run load only")
	idle := flag.Int("idle", 0, "open N idle streams and hold them")
	small := flag.Bool("small", false, "server: small buffers")
	group := flag.Int("group", 0, "fan-out mode: M member connections, one sender")
	rate := flag.Float64("rate", 0, "messages/s per sender (0: closed loop, -window unacked sends)")
	ack := flag.Bool("ack", false, "group: members answer every push with an ack, as Starling's devices do")
	serverPid := flag.Int("server-pid", 0, "the -serve process: print its CPU time per delivery (or per idle stream opened)")
	flag.Parse()
	cpu := serverCPU(*serverPid)
	if *group > 0 {
		n := groupLoad(*target, *group, *window, *dur, *rate, *ack)
		cpu.report("delivery", n)
		return
	}
	if *idle > 0 {
		sd := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}
		for i := 0; i < *idle; i++ {
			cc, _ := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			st, err := cc.NewStream(context.Background(), sd, "/relay.Relay/Stream")
			if err != nil {
				panic(err)
			}
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, uint32(1000000+i))
			st.SendMsg(&wrapperspb.BytesValue{Value: b})
		}
		fmt.Println("opened", *idle)
		time.Sleep(time.Second)
		cpu.report("stream opened (connection + stream)", int64(*idle))
		time.Sleep(19 * time.Second)
		return
	}
	if *serve != "" {
		lis, _ := net.Listen("tcp", *serve)
		var opts []grpc.ServerOption
		if *small {
			opts = append(opts, grpc.ReadBufferSize(4096), grpc.WriteBufferSize(4096), grpc.SharedWriteBuffer(true), grpc.InitialWindowSize(65535), grpc.InitialConnWindowSize(65535))
		}
		s := grpc.NewServer(opts...)
		s.RegisterService(&desc, nil)
		s.Serve(lis)
		return
	}
	var sent, recv atomic.Int64
	var lmu sync.Mutex
	var lat []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	sd := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}
	open := func(id uint32) grpc.ClientStream {
		cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err)
		}
		st, err := cc.NewStream(context.Background(), sd, "/relay.Relay/Stream")
		if err != nil {
			panic(err)
		}
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, id)
		st.SendMsg(&wrapperspb.BytesValue{Value: b})
		return st
	}
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < *pairs; p++ {
		a, b := uint32(2*p), uint32(2*p+1)
		sb := open(b)
		sa := open(a)
		time.Sleep(time.Millisecond)
		// receiver
		go func() {
			for {
				m := new(wrapperspb.BytesValue)
				if err := sb.RecvMsg(m); err != nil {
					return
				}
				ts := int64(binary.BigEndian.Uint64(m.Value[5:13]))
				d := time.Since(time.Unix(0, ts))
				recv.Add(1)
				lmu.Lock()
				if len(lat) < 2_000_000 {
					lat = append(lat, d)
				}
				lmu.Unlock()
				sb.SendMsg(&wrapperspb.BytesValue{Value: []byte{'A', 0, 0, 0, 0}})
			}
		}()
		// sender with a window of outstanding acks
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens := make(chan struct{}, *window)
			for i := 0; i < *window; i++ {
				tokens <- struct{}{}
			}
			go func() {
				for {
					m := new(wrapperspb.BytesValue)
					if err := sa.RecvMsg(m); err != nil {
						return
					}
					tokens <- struct{}{}
				}
			}()
			payload := make([]byte, 13+100)
			payload[0] = 'S'
			binary.BigEndian.PutUint32(payload[1:5], b)
			tick := ticker(*rate)
			for ctx.Err() == nil {
				select {
				case <-tokens:
				case <-ctx.Done():
					return
				}
				if tick != nil {
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
				binary.BigEndian.PutUint64(payload[5:13], uint64(time.Now().UnixNano()))
				if err := sa.SendMsg(&wrapperspb.BytesValue{Value: append([]byte(nil), payload...)}); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(f*float64(len(lat)-1))]
	}
	fmt.Printf("pairs=%d window=%d sent=%d delivered=%d delivered/s=%.0f p50=%v p99=%v\n", *pairs, *window, sent.Load(), recv.Load(), float64(recv.Load())/el.Seconds(), q(0.5), q(0.99))
	cpu.report("delivered message", recv.Load())
	os.Exit(0)
}

// groupLoad: M members each on its own connection; one sender with a window of unacked sends; counts deliveries.
func groupLoad(target string, members, window int, dur time.Duration, rate float64, ack bool) int64 {
	sd := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}
	open := func(id uint32) grpc.ClientStream {
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err)
		}
		st, err := cc.NewStream(context.Background(), sd, "/relay.Relay/Stream")
		if err != nil {
			panic(err)
		}
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, id)
		st.SendMsg(&wrapperspb.BytesValue{Value: b})
		return st
	}
	var recv atomic.Int64
	var lmu sync.Mutex
	var lat []time.Duration
	for i := 0; i < members; i++ {
		st := open(1<<30 + uint32(i))
		go func() {
			for {
				m := new(wrapperspb.BytesValue)
				if err := st.RecvMsg(m); err != nil {
					return
				}
				n := recv.Add(1)
				if ack {
					st.SendMsg(&wrapperspb.BytesValue{Value: []byte{'A', 0, 0, 0, 0}})
				}
				if n%97 == 0 {
					d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m.Value[5:13]))))
					lmu.Lock()
					lat = append(lat, d)
					lmu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	s := open(7)
	tokens := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		tokens <- struct{}{}
	}
	go func() {
		for {
			m := new(wrapperspb.BytesValue)
			if err := s.RecvMsg(m); err != nil {
				return
			}
			tokens <- struct{}{}
		}
	}()
	payload := make([]byte, 13+100)
	payload[0] = 'G'
	tick := ticker(rate)
	start := time.Now()
	sent := 0
	for time.Since(start) < dur {
		<-tokens
		if tick != nil {
			<-tick.C
		}
		binary.BigEndian.PutUint64(payload[5:13], uint64(time.Now().UnixNano()))
		s.SendMsg(&wrapperspb.BytesValue{Value: append([]byte(nil), payload...)})
		sent++
	}
	el := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(f*float64(len(lat)-1))]
	}
	fmt.Printf("group members=%d window=%d sent=%d deliveries=%d deliveries/s=%.0f p50=%v p99=%v\n", members, window, sent, recv.Load(), float64(recv.Load())/el.Seconds(), q(0.5), q(0.99))
	return recv.Load()
}

// ticker paces a sender at rate messages/s; nil for a closed loop.
func ticker(rate float64) *time.Ticker {
	if rate <= 0 {
		return nil
	}
	return time.NewTicker(time.Duration(float64(time.Second) / rate))
}

// cpuMark is the -serve process's CPU time when the load began.
type cpuMark struct {
	pid   int
	ticks int64
}

func serverCPU(pid int) cpuMark { return cpuMark{pid, cpuTicks(pid)} }

// report prints the server's CPU time since the mark per unit of work.
// Setup (opening the streams) is inside the window for the group and c2c
// loads, as it is small beside the run; for -idle it is the figure.
func (m cpuMark) report(unit string, n int64) {
	if m.pid == 0 || n == 0 {
		return
	}
	us := float64(cpuTicks(m.pid)-m.ticks) * 1e6 / 100 // USER_HZ
	fmt.Printf("server cpu: %.2fs, %.1f µs per %s\n", us/1e6, us/float64(n), unit)
}

// cpuTicks is utime+stime of pid from /proc/<pid>/stat, in clock ticks.
func cpuTicks(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		panic(err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
