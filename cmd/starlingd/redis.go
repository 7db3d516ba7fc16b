package main

import (
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
)

// redisClient makes the client --redis names: one Redis, a Sentinel set
// (master_name=…) or a Redis Cluster (more than one addr), all behind
// redis.UniversalClient. The URL is only parsed here; nothing connects.
func redisClient(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("%q is not a redis:// or rediss:// URL", raw)
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(o), nil
	case q.Has("addr"):
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}
