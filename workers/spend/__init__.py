"""What jobs cost and what tenants may spend: prices, usage per attempt, budgets."""
