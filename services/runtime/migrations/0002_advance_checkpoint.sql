-- A projection batch's compare-and-set of its checkpoint, sent in the same round trip as the
-- batch's BEGIN: moves `projection` from `from_seq` to `to_seq`, or fails the transaction with
-- SQLSTATE SY001 when another process (or a rebuild) moved the checkpoint meanwhile. The row stays
-- locked until the batch commits, so no other owner can commit on top of the same checkpoint.
CREATE OR REPLACE FUNCTION runtime.advance_checkpoint(p TEXT, from_seq BIGINT, to_seq BIGINT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runtime.checkpoints SET seq = to_seq, updated_at = now()
     WHERE projection = p AND seq = from_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the checkpoint of projection % is no longer %', p, from_seq
            USING ERRCODE = 'SY001';
    END IF;
END
$$;
