"""The analytics service: counters, GMV, funnels and top products from every topic."""
