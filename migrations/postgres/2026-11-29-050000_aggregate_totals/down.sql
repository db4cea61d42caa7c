DROP TABLE instance_counter_totals;
DROP TABLE instance_value_totals;
