DROP TABLE workspace_members;
DROP TABLE workspaces;
DROP TYPE workspace_role;
DROP TYPE plan_tier;
