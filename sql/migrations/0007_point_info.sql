-- Schema version 7: camera files are the domain `point_info`, as the full release and the omnidata downloader
-- name them (`points` is the legacy name). Existing rows keep their paths, under the new column name.
alter table images rename column points_path to point_info_path;

update datasets
set domains = list_transform(domains, lambda domain: case when domain = 'points' then 'point_info' else domain end);
