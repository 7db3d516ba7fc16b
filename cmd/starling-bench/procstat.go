package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat. It is 100 on
// every Linux build that matters, and reading it (sysconf) would need cgo.
const userHZ = 100

// procSample is a process's CPU time and resident memory at one moment.
type procSample struct {
	At  time.Time
	CPU time.Duration // user + system
	RSS int64         // bytes
}

// readProc samples process pid from /proc.
func readProc(pid int) (procSample, error) {
	now := time.Now()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("read server stats: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procSample{}, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')': state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return procSample{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}, fmt.Errorf("parse /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	rss, err := readRSS(pid)
	if err != nil {
		return procSample{}, err
	}
	return procSample{At: now, CPU: time.Duration(utime+stime) * time.Second / userHZ, RSS: rss}, nil
}

// readRSS reads VmRSS from /proc/PID/status.
func readRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read server status: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
			return 0, fmt.Errorf("parse /proc/%d/status: VmRSS %q", pid, strings.TrimSpace(rest))
		}
	}
	return 0, fmt.Errorf("parse /proc/%d/status: no VmRSS", pid)
}

// readProcs samples every pid, in order; the first failure is returned.
func readProcs(pids []int) ([]procSample, error) {
	samples := make([]procSample, len(pids))
	for i, pid := range pids {
		var err error
		if samples[i], err = readProc(pid); err != nil {
			return nil, err
		}
	}
	return samples, nil
}

// sumProcs adds samples up, as if one process ran all of them (the
// cluster as a whole); At is the first's.
func sumProcs(samples []procSample) procSample {
	var sum procSample
	for i, s := range samples {
		if i == 0 {
			sum.At = s.At
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
	}
	return sum
}

// procReport is a process's figures over a window of secs seconds.
func procReport(pid int, before, after procSample, secs float64) ProcReport {
	cpu := (after.CPU - before.CPU).Seconds()
	return ProcReport{
		PID:        pid,
		CPUSeconds: cpu,
		CPUPercent: 100 * cpu / secs,
		RSSBefore:  before.RSS,
		RSSAfter:   after.RSS,
	}
}

// serverReports are each server process's figures and their sum, which
// also carries CPU per message: the cost of a message to the whole
// cluster, whichever nodes it went through. The sum names the pid only
// when there is one.
func serverReports(pids []int, before, after []procSample, secs float64, acked, delivered int64) ([]ProcReport, *ProcReport) {
	each := make([]ProcReport, len(pids))
	for i, pid := range pids {
		each[i] = procReport(pid, before[i], after[i], secs)
	}
	total := procReport(0, sumProcs(before), sumProcs(after), secs)
	if len(pids) == 1 {
		total.PID = pids[0]
	}
	total.CPUPerAckedUs = perMessage(1e6*total.CPUSeconds, acked)
	total.CPUPerDeliveredUs = perMessage(1e6*total.CPUSeconds, delivered)
	return each, &total
}

// selfCPU is this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
