-- Tenants and their members. Roles and plan tiers are enums so that a bad
-- value can never be stored, whatever writes the row.
CREATE TYPE plan_tier AS ENUM ('free', 'pro', 'enterprise');
CREATE TYPE workspace_role AS ENUM ('owner', 'admin', 'operator', 'viewer');

CREATE TABLE workspaces (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    owner_id    uuid        NOT NULL REFERENCES users (id),
    plan_tier   plan_tier   NOT NULL DEFAULT 'free',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspace_members (
    workspace_id  uuid           NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       uuid           NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          workspace_role NOT NULL,
    joined_at     timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);

-- "Workspaces I am a member of" is the listing query; the primary key serves
-- the per-workspace lookups.
CREATE INDEX workspace_members_user_idx ON workspace_members (user_id, workspace_id);
-- Newest-first keyset paging.
CREATE INDEX workspaces_created_idx ON workspaces (created_at DESC, id DESC);
