-- Profiles and balances for the simulator's users (upstream-sim -seed 1 -users 3 -print-users),
-- for deploy/compose.yaml. Runs after the migrate service; safe to run again.
insert into profiles (user_id) values
  ('117de89d-603a-4f58-9f41-d4a577e4d850'),
  ('8d24a23a-27b0-4025-9473-8d6d8bab76c4'),
  ('fc2778ad-914f-4786-8b89-06533fb5a9af')
on conflict do nothing;
insert into user_credits (user_id, credits_remaining) values
  ('117de89d-603a-4f58-9f41-d4a577e4d850', 100000),
  ('8d24a23a-27b0-4025-9473-8d6d8bab76c4', 100000),
  ('fc2778ad-914f-4786-8b89-06533fb5a9af', 50)
on conflict do nothing;
